"""Captions scored per second on one core: diadem_ray's scorer vs the plain pure-Python baseline
(bench/reference_diadembench.py), same captions, same run. Also checks the two agree.

    .venv/bin/python bench/reward_throughput.py [--repeats 5] [--baseline-captions 30] [--baseline-repeats 3]

Workloads: ``mix`` (DiaDemBench-like: 1–4 speakers, 1–30 turns, ~35% Chinese, hypotheses with
merges, splits, edits, drops and speaker changes) and ``en10`` (10-turn English dialogues). Results: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import reference_diadembench as R  # noqa: E402

from diadem_ray.rewards.metrics import score_dialogue  # noqa: E402
from diadem_ray.rewards.normalize import clean_line, to_simplified  # noqa: E402
from diadem_ray.rewards.speakers import normalize_speaker  # noqa: E402

EN = (
    "the a we you they i go come see know think want need time day people way thing man woman child world life "
    "hand part place case week company system program question work number night point home water room mother "
    "area money story fact month lot right study book eye job word business issue side kind head house service "
    "friend father power hour game line end member law car city name team minute idea kid body back parent face "
    "level office door health person art war history party result change morning reason girl guy moment air"
).split()
ZH = list(
    "我你他她们的是不了在有人这中大为上个国说到时要就出会可也和对生能而子那得于着下自之年过发后作里用道行所然家种事成方多经么去法学如都同现当没动面起看定天分还进好小部其些主样理心本前开但因只从想实日军者意无力它与长把机十民第公此已工使情明性知全三又关点正业外将两高间由问很最重并物手应战向头文体政美相见被利什二等产或新己制身果加西斯月话合回特代内信表化老给世位次度门任常先海通教儿原东声提立及比员解水名真论处走义各入几口认条平系气题活尔更别打女变四神总何电数安少报才结反受目太量再感建务做接必场件计管期市直德资命山金指克许统区保至队形社便空决治展马科司五基眼书非则听白却界达光放强即像难且权思王象完设式色路记南品住告类求据程北边死张该交规万取拉格望觉术领共确传师观清今切院让识候带导争运笑飞风步改收根干造言联持组每济车亲极林服快办议往元英士证近失转夫令准布始怎呢存未远叫台单影具罗字爱击流备兵连调深商算质团集百需价花党华城石级整府离况亚请技际约示复病息究线似官火断精满支视消越器容照须九增研写称企八功吗包片史委乎查轻易早曾除农找装广显吧阿李标谈吃图念六引历首医局突专费号尽另周较注语仅考落青随选列武红响虽推势参希古众构房半节土投某案黑维革划敌致陈律足态护七兴派孩验责营星够章音跟志底站严巴例防族供效续施留讲型料终答紧黄绝奇察母京段依批群项故按河米围江织害斗双境客纪采举杀攻父苏密低朝友诉止细愿千值仍男钱破网热助倒育属坐帝限船脸职速刻乐否刚威毛状率甚独球般普怕弹校苦创假久错承印晚兰试股拿脑预谁益阳若哪微尼继送急血惊伤素药适波夜省初喜卫源食险待述陆习置居劳财环排福纳欢雷警获模充负云停木游龙树疑层冷洲冲射略范竟句室异激汉村哈策演简卡罪判担州静退既衣您宗积余痛检差富灵协角占配征修皮挥胜降阶审沉坚善妈刘读啊超免压银买皇养伊怀执副乱抗犯追帮宣佛岁航优怪香著田铁控税左右份穿艺背阵草脚概恶块顿敢守酒岛托央户烈洋哥索胡款靠评版宝座释景顾弟登货互付伯慢欧换闻危忙核暗姐介坏讨丽良序升监临亮露永呼味野架域沙掉括舰鱼杂误湾吉减编楚肯测败屋跑梦散温困剑渐封救贵枪缺楼县尚毫移娘朋画班智亦耳恩短掌恐遗固席松秘谢鲁遇康虑幸均销钟诗藏赶剧票损忽巨炮旧端探湖录叶春乡附吸予礼港雨呀板庭妇归睛饭额含顺输摇招婚脱补谓督毒油疗旅泽材灭逐莫笔亡鲜词圣择寻厂睡博勒烟授诺伦岸奥唐卖俄炸载洛健堂旁宫喝借君禁阴园谋宋避抓荣姑孙逃牙束跳顶玉镇雪午练迫爷篇肉嘴馆遍凡础洞卷坦牛宁纸诸训私庄祖丝翻暴森塔默握戏隐熟骨访弱蒙歌店鬼软典欲萨伙遭盘爸扩盖弄雄稳忘亿刺拥徒姆杨齐赛趣曲刀床迎冰虚玩析窗醒妻透购替塞努休虎扬途侵刑绿兄迅套贸毕唯谷轮库迹尤竞街促延震弃甲伟麻川申缓潜闪售灯针哲络抵朱埃抱鼓植纯夏忍页杰筑折郑贝尊吴秀混臣雅振染盛怒舞圆搞狂措姓残秋培迷诚宽宇猛摆梅毁伸摩盟末乃悲拍丁赵硬麦蒋操耶阻订彩抽赞魔纷沿喊违妹浪汇币丰蓝殊献桌啦瓦莱援译夺汽烧距裁偏符勇触课敬哭懂墙袭召罚侠厅拜巧侧韩冒债曼融惯享戴童犹乘挂奖绍厚纵障讯涉彻刊丈爆乌役描洗玛患妙镜唱烦签仙彼弗症仿倾牌陷鸟轰咱菜闭奋庆撤泪茶疾缘播朗杜奶季丹狗尾仪偷奔珠虫驻孔宜艾桥淡翼恨繁寒伴叹旦愈潮粮缩罢聚径恰挑袋灰捕徐珍幕映裂泰隔启尖忠累炎暂估泛荒偿横拒瑞忆孤鼻闹羊呆厉衡胞零穷舍码赫婆魂灾洪腿胆津俗辩胸晓劲贫仁偶辑邦恢赖圈摸仰润堆碰艇稍迟辆废净凶署壁御奉旋冬矿抬蛋晨伏吹鸡倍糊秦盾杯租骑乏隆诊奴摄丧污渡旗甘耐凭扎抢绪粗肩梁幻菲皆碎宙叔岩荡综爬荷悉蒂返井壮薄悄扫敏碍殖详迪矛霍允幅撒剩凯颗骂赏液番箱贴漫酸郎腰舒眉忧浮辛恋餐吓挺励辞艘键伍峰尺昨黎辈贯侦滑券崇扰宪绕趋慈乔阅汗枝拖墨胁插箭腊粉泥氏彭拔骗凤慧媒佩愤扑龄驱惜豪掩兼跃尸肃帕驶堡届欣惠册储飘桑闲惨洁踪勃宾频仇磨递邪撞拟滚奏巡颜剂绩贡疯坡瞧截燃焦殿伪柳锁逼颇昏劝呈搜勤戒驾漂饮曹朵仔柔俩孟腐幼践籍牧凉牲佳娜浓芳稿竹腹跌逻垂遵脉貌柏狱猜怜惑陶兽帐饰贷昌叙躺钢沟寄扶铺邓寿惧询汤盗肥尝匆辉奈扣廷澳嘛董迁凝慰厌脏腾幽怨鞋丢埋泉涌辖躲晋紫艰魏吾慌祝邮吐狠鉴曰械咬邻赤挤弯椅陪割揭韦悟聪雾锋梯猫祥阔誉筹丛牵鸣沈阁穆屈旨袖猎臂蛇贺柱抛鼠瑟戈牢逊迈欺吨琴衰瓶恼燕仲诱狼池疼卢仗冠粒遥吕玄尘冯抚浅敦纠钻晶岂峡苍喷耗凌敲菌赔涂粹扁亏寂煤熊恭湿循暖糖赋抑秩帽哀宿踏烂袁侯抖夹昆肝擦猪炼恒慎搬纽纹玻渔磁铜齿跨押怖漠疲叛遣兹祭醉拳弥斜档稀捷肤疫肿豆削岗晃吞宏癌肚隶履涨耀扭坛拨沃绘伐堪仆郭牺歼墓雇廉契拼惩捉覆刷劫嫌瓜歇雕闷乳串娃缴唤赢莲霸桃妥瘦搭赴岳嘉舱俊址庞耕锐缝悔邀玲惟斥宅添挖呵讼氧浩羽斤酷掠妖祸侍乙妨贪挣汪尿莉悬唇翰仓轨枚盐览傅帅庙芬屏寺胖璃愚滴疏萧姿颤丑劣柯寸扔盯辱匹俱辨饿蜂哦腔郁溃谨糟葛苗肠忌溜鸿爵鹏鹰笼丘桂滋聊挡纲肌茨壳痕碗穴膀卓贤卧膜毅锦欠哩函茫昂薛皱夸豫胃舌剥傲拾窝睁携陵哼棉晴铃填饲渴吻扮逆脆喘罩卜炉柴愉绳胎蓄眠竭喂傻慕浑奸扇柜悦拦诞饱乾泡贼亭夕爹酬儒姻卵氛泄杆挨僧蜜吟猩遂狭肖甜霞驳裕顽於摘矮秒卿畜咽披辅勾盆疆赌塑畏吵囊嗯泊肺骤缠冈羞瞪吊贾漏斑涛悠鹿俘锡卑葬铭滩嫁催璇翅盒蛮矣潘歧赐鲍锅廊拆灌勉盲宰佐啥胀扯禧辽抹筒棋裤唉朴咐孕誓喉妄拘链驰栏逝窃艳臭纤玑棵趁匠盈翁愁瞬婴孝颈倘浙谅蔽畅赠妮莎尉冻跪闯葡後厨鸭颠遮谊圳吁仑辟瘤嫂陀框谭亨钦庸歉芝吼甫衫摊宴嘱衷娇陕矩浦讶耸裸碧摧薪淋耻胶屠鹅饥盼脖虹翠崩账萍逢赚撑翔倡绵猴枯巫昭怔渊凑溪蠢禅阐旺寓藤匪伞碑挪琼脂谎慨菩萄狮掘抄岭晕逮砍掏狄晰罕挽脾舟痴蔡剪脊弓懒叉拐喃僚捐姊骚拓歪粘柄坑陌窄湘兆崖骄刹鞭芒筋聘钩棍嚷腺弦焰耍俯厘愣厦恳饶钉寡憾摔叠惹喻谱愧煌徽溶坠煞巾滥洒堵瓷咒姨棒郡浴媚稣淮哎屁漆淫巢吩撰啸滞玫硕钓蝶膝姚茂躯吏猿寨恕渠戚辰舶颁惶狐讽笨袍嘲啡泼衔倦涵雀旬僵撕肢垄夷逸茅侨舆窑涅蒲谦杭噢弊勋刮郊凄捧浸砖鼎篮蒸饼亩肾陡爪兔殷贞荐哑炭坟眨搏咳拢舅昧擅爽咖搁禄雌哨巩绢螺裹昔轩谬谍龟媳姜瞎冤鸦蓬巷琳栽沾诈斋瞒彪厄咨纺罐桶壤糕颂膨谐垒咕隙辣绑宠嘿兑霉挫稽辐乞纱裙嘻哇绣杖塘衍轴攀膊譬斌祈踢肆坎轿棚泣屡躁邱凰溢椎砸趟帘帆栖窜丸斩堤塌贩厢掀喀乖谜捏阎滨虏匙芦苹卸沼钥株祷剖熙哗劈怯棠胳桩瑰娱娶沫嗓蹲焚淘嫩韵衬匈钧竖峻豹捞菊鄙魄兜哄颖镑屑蚁壶怡渗秃迦旱哟咸焉谴宛稻铸锻伽詹毙恍贬烛骇芯汁桓坊驴朽靖佣汝碌迄冀荆崔雁绅珊榜诵傍彦醇笛禽勿娟瞄幢寞睹贿踩霆呜拱妃蔑谕缚诡篷淹腕煮倩卒勘馨逗甸贱炒灿敞蜡囚栗辜垫妒魁谣寥陇艺".replace(
        " ", ""
    )
)


def en_utt(rng):
    return " ".join(rng.choice(EN) for _ in range(rng.randint(4, 18)))


def zh_utt(rng):
    return "".join(rng.choice(ZH) for _ in range(rng.randint(5, 24)))


def perturb(rng, gt):
    """A plausible hypothesis: drops, merges, splits, edits, speaker swaps, insertions."""
    dt = []
    for line in gt:
        spk, content = line.split(": ", 1)
        r = rng.random()
        if r < 0.08:
            continue
        if r < 0.18:  # split
            cut = max(1, len(content) // 2)
            dt += [f"{spk}: {content[:cut]}", f"{spk}: {content[cut:]}"]
        elif r < 0.26 and dt and dt[-1].startswith(spk + ":"):  # merge with previous of same speaker
            dt[-1] += " " + content
        elif r < 0.45:  # character edits
            chars = list(content)
            for _ in range(max(1, len(chars) // 8)):
                chars[rng.randrange(len(chars))] = rng.choice("abcxyz的了")
            dt.append(f"{spk}: {''.join(chars)}")
        elif r < 0.52:
            dt.append(f"Speaker {rng.choice('XYZ')}: {content}")
        else:
            dt.append(line)
        if rng.random() < 0.04:
            dt.append(f"{spk}: {en_utt(rng)}")
    return dt


def mix_cases(n, seed=0):
    """Clips like DiaDemBench's: 1–4 speakers (a lone speaker says 1–6 lines, a conversation
    2–30 turns, the speaker changing at 80% of turns), ~35% Chinese, then a perturbed hypothesis."""
    rng = random.Random(seed)
    cases = []
    for _ in range(n):
        zh = rng.random() < 0.35
        k = rng.choice([1, 2, 2, 3, 4])
        speakers = [f"speaker {c}" for c in "ABCD"[:k]]
        turns = rng.randint(1, 6) if k == 1 else rng.randint(2, 30)
        gt, spk = [], rng.choice(speakers)
        for _ in range(turns):
            if k > 1 and rng.random() < 0.8:
                spk = rng.choice([s for s in speakers if s != spk])
            gt.append(f"{spk}: {zh_utt(rng) if zh else en_utt(rng)}")
        cases.append((perturb(rng, gt), gt))
    return cases


def en10_cases(n, seed=1):
    rng = random.Random(seed)
    cases = []
    for _ in range(n):
        gt = [f"{'the man' if k % 2 else 'the woman'}: {en_utt(rng)}." for k in range(10)]
        cases.append((perturb(rng, gt), gt))
    return cases


def rate(fn, cases, repeats):
    """Median captions/s over ``repeats`` timed passes, and the outputs of the last pass."""
    runs, out = [], []
    for _ in range(repeats):
        # Cold caches every pass: repeated passes must not be served from memoised lines.
        clean_line.cache_clear()
        to_simplified.cache_clear()
        normalize_speaker.cache_clear()
        out = []
        t = time.perf_counter()
        for dt, gt in cases:
            out.append(fn(dt, gt))
        runs.append(len(cases) / (time.perf_counter() - t))
    return statistics.median(runs), runs, out


def check_agreement(ours_out, ref_out, cases):
    """Groups and per-sample fields of the two implementations must agree (off the clock)."""
    for ours, ref, (dt, gt) in zip(ours_out, ref_out, cases):
        got = [(list(g.dt_indices), list(g.gt_indices)) for g in ours.groups]
        want = [(g["dt_indices"], g["gt_indices"]) for g in ref["groups"]]
        if (
            got != want
            or abs(ours.asr_recall - ref["asr_recall"]) > 1e-9
            or abs(ours.ref_precision - ref["ref_precision"]) > 1e-9
        ):
            raise SystemExit(f"MISMATCH on {dt!r} vs {gt!r}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--captions", type=int, default=2000, help="captions per workload for the fast scorer")
    ap.add_argument("--baseline-captions", type=int, default=20, help="captions per workload for the slow baseline")
    ap.add_argument("--baseline-repeats", type=int, default=3)
    args = ap.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}, 1 process (1 core)"
    )
    print(
        "| workload | diadem_ray captions/s, all captions | diadem_ray captions/s, baseline's captions | baseline "
        "captions/s | ratio (same captions) |"
    )
    print("|---|---|---|---|---|")
    for name, make in (("mix 1-30 turns en+zh", mix_cases), ("10-turn English", en10_cases)):
        cases = make(args.captions)
        base_cases = cases[: args.baseline_captions]
        ours, ours_runs, _ = rate(score_dialogue, cases, args.repeats)
        same, same_runs, same_out = rate(score_dialogue, base_cases, args.repeats)
        base, base_runs, base_out = rate(R.score, base_cases, args.baseline_repeats)
        check_agreement(same_out, base_out, base_cases)
        print(f"| {name} | {ours:,.0f} | {same:,.0f} | {base:,.2f} | {same / base:,.0f}x |", flush=True)
        print(
            f"<!-- runs/s: ours {[round(x) for x in ours_runs]}, ours on baseline captions "
            f"{[round(x) for x in same_runs]}, "
            f"baseline {[round(x, 2) for x in base_runs]} -->",
            flush=True,
        )


if __name__ == "__main__":
    main()
